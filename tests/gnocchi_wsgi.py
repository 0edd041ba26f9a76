"""The real Gnocchi's REST app for gunicorn, configured from ``$GNOCCHI_CONFIG`` (not from gunicorn's argv).

Imported only by the Gnocchi virtualenv's gunicorn (``.venv-gnocchi``, see scripts/setup.sh).
"""

import os

from oslo_config import cfg  # type: ignore[import-not-found]

from gnocchi import opts, service  # type: ignore[import-not-found]
from gnocchi.rest import app  # type: ignore[import-not-found]

opts.set_defaults()
application = app.load_app(service.prepare_service(args=[], conf=cfg.ConfigOpts(),
                                                   default_config_files=[os.environ["GNOCCHI_CONFIG"]]))

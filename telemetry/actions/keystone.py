"""Keystone tokens for our own calls to Heat, from keystoneauth1 sessions, as Aodh gets them.

Both kinds come from the service user in ``actions.heat.keystone``:

* **trust-scoped**, for ``trust+http(s)://TRUST_ID[:delete]@heat/...`` (the form
  Aodh's API writes once it has made a trust from the alarm's owner to its
  service user): v3 password authentication scoped to the trust, so the signal
  carries the owner's delegated roles on the owner's project;
* **project-scoped**, for a ``trust+`` URL without a trust: v3 password
  authentication scoped to ``project_name``.

keystoneauth1 is synchronous (requests), so a token is fetched in a worker
thread. Each auth plugin keeps its token and fetches a new one shortly before it
expires (keystoneauth1's own rule), so a burst of signals costs one call to
Keystone; one plugin per trust, the least recently used dropped past
``MAX_TRUSTS``. Keystone is the operator's endpoint, not an alarm's target: it is
not held to ``actions.allowed_targets``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING

from telemetry.actions.models import SendOutcome
from telemetry.config.rules import KeystoneConfig

if TYPE_CHECKING:
    from keystoneauth1.identity import v3

__all__ = ["MAX_TRUSTS", "KeystoneTokens"]

#: Trusts whose plugins (and tokens) are kept; each is a few hundred bytes.
MAX_TRUSTS = 1000


class KeystoneTokens:
    def __init__(self, cfg: KeystoneConfig, timeout: float) -> None:
        from keystoneauth1 import session

        self.cfg = cfg
        self.session = session.Session(verify=cfg.ca_file or True, timeout=timeout)
        self._plugins: OrderedDict[str | None, v3.Password] = OrderedDict()

    def _plugin(self, trust_id: str | None) -> v3.Password:
        from keystoneauth1.identity import v3

        plugin = self._plugins.get(trust_id)
        if plugin is not None:
            self._plugins.move_to_end(trust_id)
            return plugin
        c = self.cfg
        # Scoped to the trust, or to the project: Keystone refuses a request that names both.
        plugin = v3.Password(auth_url=c.auth_url, username=c.username, password=c.password.get_secret_value(),
                             user_domain_name=c.user_domain_name, include_catalog=False, trust_id=trust_id,
                             project_name=None if trust_id else c.project_name,
                             project_domain_name=None if trust_id else c.project_domain_name)
        self._plugins[trust_id] = plugin
        while len(self._plugins) > MAX_TRUSTS:
            self._plugins.popitem(last=False)
        return plugin

    async def token(self, trust_id: str | None = None) -> str | SendOutcome:
        """A token scoped to ``trust_id`` (or to the project), or why there is none as a delivery outcome."""
        from keystoneauth1 import exceptions as ksa

        plugin = self._plugin(trust_id)
        what = "a trust-scoped" if trust_id else "a project-scoped"
        try:
            token = await asyncio.to_thread(plugin.get_token, self.session)
        except ksa.HttpError as exc:
            status = exc.http_status
            error = f"keystone: no {what[2:]} token: {type(exc).__name__} (HTTP {status})"
            # A bad password or a trust that is gone or expired does not mend itself; Keystone being down does.
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                return SendOutcome.permanent(error, status)
            return SendOutcome.transient(error, status)
        except ksa.ClientException as exc:  # connection refused, timeout, TLS, a response that is not a token
            return SendOutcome.transient(f"keystone: no {what[2:]} token: {type(exc).__name__}: {exc}")
        if not token:
            return SendOutcome.permanent(f"keystone returned {what} token without X-Subject-Token")
        return str(token)

    def invalidate(self, trust_id: str | None = None) -> None:
        """Forget the token (Heat answered 401: revoked, or the trust was deleted); the next call fetches one."""
        plugin = self._plugins.get(trust_id)
        if plugin is not None:
            plugin.invalidate()

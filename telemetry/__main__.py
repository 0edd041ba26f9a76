import os

# pydantic looks for plugins through every installed distribution's entry points when it builds its
# first model: 25 ms, a tenth of a short command's start. Nothing here uses one; setting the variable
# (to "" even) before the start keeps pydantic's own behaviour.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from telemetry.cli import main

# Guarded: the store's sealing worker is a spawned process, which imports the main module again.
if __name__ == "__main__":
    main()

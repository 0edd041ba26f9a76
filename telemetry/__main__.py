from telemetry.cli import main

# Guarded: the store's sealing worker is a spawned process, which imports the main module again.
if __name__ == "__main__":
    main()

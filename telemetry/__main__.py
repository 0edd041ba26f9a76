from telemetry.cli import main

main()

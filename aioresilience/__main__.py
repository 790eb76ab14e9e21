"""``python -m aioresilience simulate ...``: the scenario simulator's command line."""

from aioresilience.sim.cli import main

if __name__ == "__main__":
    main()

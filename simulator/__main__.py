"""``python -m simulator --port 8090``: the simulator without the ``imagegen`` CLI."""

import typer

from simulator.cli import simulator


def main() -> None:
    """Run the simulator command."""
    typer.run(simulator)


if __name__ == "__main__":
    main()

"""`python -m poolkit`: the same command line as the `poolkit` console script."""

from poolkit.cli import main

if __name__ == "__main__":
    main()

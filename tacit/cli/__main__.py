"""`python -m tacit.cli …`: the same command line as the `tacit` console script."""

from tacit.cli.app import main

if __name__ == "__main__":
    main()

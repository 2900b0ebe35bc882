"""The ``sscl`` subcommands' bodies, one module per command group (``sscl.cli`` parses the
command line and imports the module of the command it runs, so ``sscl --help`` loads none)."""

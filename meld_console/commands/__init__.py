"""The subcommands of `meld-console`, one module per group."""

"""Command-line entry points: train, predict, evaluate, export (also top-level scripts and
`unetjax-*` console scripts); `common` holds their exit codes and error handling."""

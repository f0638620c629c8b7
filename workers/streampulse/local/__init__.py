"""The one-machine stack: real engines started as local processes."""

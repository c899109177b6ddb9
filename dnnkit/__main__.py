from dnnkit.cli import entry

entry()

from singlerun.cli import entry

entry()

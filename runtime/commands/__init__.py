"""The runtime's click commands: parse options, call one library function, render. runtime/cli.py
loads them lazily."""

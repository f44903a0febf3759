"""ids -> text: the running batch (Generator) and its one loop, text streams and stop strings,
beam search."""

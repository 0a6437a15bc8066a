"""Before paying for a run: estimate p, choose k (margins), price it, and tune k from a finished log."""

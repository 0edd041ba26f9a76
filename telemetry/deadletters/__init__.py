"""Dead letters: records a stage refused, kept with their reason so an operator can read and replay them."""

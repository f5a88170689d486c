"""The teacher graph: describe -> reason -> critique, with retries and STaR rationalization."""

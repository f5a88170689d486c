"""The data core: items, their options and images, the files they come from and go to.

Imports nothing else of the project but `distill.errors` (the base class of a user's errors)."""

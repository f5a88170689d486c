"""Training the student: datasets from the store, TRL's SFT and DPO trainers, validation, merging."""

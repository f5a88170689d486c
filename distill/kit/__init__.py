"""The kit: what the embedded default needs and a user of real data does not (sample covers, the sample-cover
teacher, the tiny offline student, the demo). No product module imports it."""

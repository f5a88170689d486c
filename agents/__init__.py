"""The teacher's agents: a describer, a reasoner and a critic. Each uses a backend; none knows the graph."""

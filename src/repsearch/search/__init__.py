"""The evolutionary search in representation space: strategy, operators, randomness, problem, engine, drivers."""

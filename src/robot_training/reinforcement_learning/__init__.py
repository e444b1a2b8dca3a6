"""Model-based reinforcement learning: the Dreamer agent (seed ``train_dreamer``)."""

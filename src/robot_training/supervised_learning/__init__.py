"""Imitation learning: behavioral cloning and the seed's ``train_supervised``."""

"""Model-free policies: PPO, SAC and the seed's ``train_policy`` / ``PolicyTrainer``."""

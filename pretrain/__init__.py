"""Self-supervised (DenseCL, MoCo-v2) and supervised ResNet pretraining, from one CPU to many GPUs."""

"""Linear-probe and kNN classification of a frozen ResNet backbone (`python -m pretrain.linear_eval`)."""

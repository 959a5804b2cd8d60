"""Training: the one loop for pre-training and fine-tuning (loop), its settings (config), model roles
(nets), batches, resumable state, time limit (deadline), processes (distributed), optimisers (optim),
memory budget (memory), fine-tuning grids (finetune) and GPU slots (gpus)."""

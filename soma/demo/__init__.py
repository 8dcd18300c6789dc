"""The CPU demo (tools/demo/run.py): generated scenes, a small pretrained ViT, and the fine-tuning comparison."""

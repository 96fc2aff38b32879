"""Train the 'unet' model: `python unet_train_medical.py --help` lists the options (shared by all train scripts)."""
from utils.train.loop import train

if __name__ == "__main__":
    raise SystemExit(train("unet"))

"""Train the 'att_unet' model: `python att_train_medical.py --help` lists the options (shared by all train scripts)."""
from utils.train.loop import train

if __name__ == "__main__":
    raise SystemExit(train("att_unet"))

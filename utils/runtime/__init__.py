"""How a model runs on a device: device and precision choice, the speed probe, tiled and flipped forward passes."""

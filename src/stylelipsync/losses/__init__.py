"""Training losses: perceptual (LPIPS-VGG16, MS-SSIM fallback)."""

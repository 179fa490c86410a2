"""AutoPalette (Yuan et al., NeurIPS 2024): colour-reduced dataset distillation on top of trajectory matching."""

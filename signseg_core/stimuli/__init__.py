"""Image sets: Fig 12 class sampling and the diverseSet (Fig 9)."""

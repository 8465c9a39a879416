"""Training torchvision architectures with ReLU or Tanh on Ray Train (paper section 4.3)."""

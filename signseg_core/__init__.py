"""signseg engine: what the positive and negative weights of a vision network each encode."""

"""Message-level code without rclpy (decoding, validation, buffers), shared by the node and the bag tools."""

"""Third-party SMPP clients (Kannel, node-smpp, Net::SMPP) driven against the real gateway."""

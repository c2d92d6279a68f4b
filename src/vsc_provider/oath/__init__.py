"""One-time passwords over the card's OTP keys: otpauth links, Google Authenticator exports, QR images, the CLI."""

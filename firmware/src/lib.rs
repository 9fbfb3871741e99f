//! The platform an ironvirt guest sees at boot.

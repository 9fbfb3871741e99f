//! ironvirt device models.

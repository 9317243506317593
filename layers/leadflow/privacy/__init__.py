"""Privacy: data-protection requests (GDPR/DSGVO art. 15 and 17), export and erasure of a contact
everywhere it is stored."""

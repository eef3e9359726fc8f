"""Operations over the store: load rows, call the pure core, write rows and the audit log.

Each function takes an open Session and the calling Actor and never commits; the caller
(one API request, one CLI command) owns the transaction, so a failure writes nothing.
"""

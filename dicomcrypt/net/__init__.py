"""DICOM networking: the SCU (``send``, ``echo``) and SCP (``serve``) built on pynetdicom.

pynetdicom is imported only inside this package, so the library and ``inspect`` do not need it.
The contracts between the modules are in docs/architecture.md ("net").
"""

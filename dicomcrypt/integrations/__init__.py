"""dicomcrypt inside a PACS: a platform-neutral storage hook and the Orthanc plugin built on it.

- :mod:`dicomcrypt.integrations.hooks`: ``StorageHook``, bytes in, bytes out, for any PACS that
  can call Python before it stores an instance (docs/integrations.md has a pynetdicom example).
- :mod:`dicomcrypt.integrations.orthanc_plugin`: the script Orthanc's Python plugin loads.

Imports point inward: this package uses the pipeline, never ``cli`` or ``net``.
"""

"""PS3.15 Annex E Basic Application Level Confidentiality Profile: which attributes identify a
patient, and what replaces them in the clear.

The table is DICOM PS3.15 Table E.1-1, column "Basic Prof." (action codes), taken from the
machine-readable extraction of the standard in innolitics/dicom-standard
(``standard/confidentiality_profile_attributes.json``, commit 0d01bf11), 456 attributes plus
three rules for tag patterns (curve data 50xx, overlay data and comments 60xx, private
attributes). GDCM's ``gdcmAnonymizer.cxx`` carries the 2008 edition's 48 attributes; this
is the current, longer list.

Action codes (PS3.15 E.1-1 legend) and how :func:`deidentify` carries them out. The table
is written per attribute; the IOD decides its Type, which we do not look up, so a combined
code takes the choice that stays conformant whatever the Type:

====== ============================================= =====================================
code   the standard                                   here
====== ============================================= =====================================
X      remove                                         removed
Z      zero length, or a dummy value                  zero length; Patient's Name and
                                                      Patient ID get a pseudonym (below)
D      a dummy value consistent with the VR           dummy by VR (:data:`DUMMY_VALUES`);
                                                      a sequence is emptied
U      a UID, consistent within a set of instances    ``2.25.<HMAC of the UID>``
X/Z    X unless Z is needed (Type 3 vs 2)             Z
X/D    X unless D is needed (Type 3 vs 1)             D
Z/D    Z unless D is needed (Type 2 vs 1)             D
X/Z/D  X unless Z or D is needed                      D
X/Z/U* X unless Z or U of contained UIDs is needed    kept; its UIDs replaced (U rows)
====== ============================================= =====================================

Attributes are handled wherever they occur, nested sequences included; a top-level element
is recorded (its original, whole) if it or anything inside it changed. The record is what
goes, encrypted, into the Modified Attributes Sequence.

Replacement UIDs and pseudonyms are keyed with a secret (HMAC-SHA256), so the same original
always gives the same replacement within one secret (a study protected in one run stays one
study, PS3.15 E.1.1 "internally consistent") while nobody without the secret can test a
guessed original against a replacement.

pydicom and the standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomcrypt.dicom.dataset_copy import independent_element_copy

__all__ = [
    "BASIC_PROFILE",
    "DUMMY_VALUES",
    "Pseudonyms",
    "action_for",
    "deidentify",
]

#: PS3.15 Table E.1-1, Basic Profile column: tag -> action code.
BASIC_PROFILE: Mapping[int, str] = {
    0x00001000: "X",  # AffectedSOPInstanceUID
    0x00001001: "U",  # RequestedSOPInstanceUID
    0x00020003: "U",  # MediaStorageSOPInstanceUID
    0x00041511: "U",  # ReferencedSOPInstanceUIDInFile
    0x00080014: "U",  # InstanceCreatorUID
    0x00080015: "X",  # InstanceCoercionDateTime
    0x00080018: "U",  # SOPInstanceUID
    0x00080020: "Z",  # StudyDate
    0x00080021: "X/D",  # SeriesDate
    0x00080022: "X/Z",  # AcquisitionDate
    0x00080023: "Z/D",  # ContentDate
    0x00080024: "X",  # OverlayDate
    0x00080025: "X",  # CurveDate
    0x0008002A: "X/Z/D",  # AcquisitionDateTime
    0x00080030: "Z",  # StudyTime
    0x00080031: "X/D",  # SeriesTime
    0x00080032: "X/Z",  # AcquisitionTime
    0x00080033: "Z/D",  # ContentTime
    0x00080034: "X",  # OverlayTime
    0x00080035: "X",  # CurveTime
    0x00080050: "Z",  # AccessionNumber
    0x00080058: "U",  # FailedSOPInstanceUIDList
    0x00080080: "X/Z/D",  # InstitutionName
    0x00080081: "X",  # InstitutionAddress
    0x00080082: "X/Z/D",  # InstitutionCodeSequence
    0x00080090: "Z",  # ReferringPhysicianName
    0x00080092: "X",  # ReferringPhysicianAddress
    0x00080094: "X",  # ReferringPhysicianTelephoneNumbers
    0x00080096: "X",  # ReferringPhysicianIdentificationSequence
    0x0008009C: "Z",  # ConsultingPhysicianName
    0x0008009D: "X",  # ConsultingPhysicianIdentificationSequence
    0x00080201: "X",  # TimezoneOffsetFromUTC
    0x00081010: "X/Z/D",  # StationName
    0x00081030: "X",  # StudyDescription
    0x0008103E: "X",  # SeriesDescription
    0x00081040: "X",  # InstitutionalDepartmentName
    0x00081041: "X",  # InstitutionalDepartmentTypeCodeSequence
    0x00081048: "X",  # PhysiciansOfRecord
    0x00081049: "X",  # PhysiciansOfRecordIdentificationSequence
    0x00081050: "X",  # PerformingPhysicianName
    0x00081052: "X",  # PerformingPhysicianIdentificationSequence
    0x00081060: "X",  # NameOfPhysiciansReadingStudy
    0x00081062: "X",  # PhysiciansReadingStudyIdentificationSequence
    0x00081070: "X/Z/D",  # OperatorsName
    0x00081072: "X/D",  # OperatorIdentificationSequence
    0x00081080: "X",  # AdmittingDiagnosesDescription
    0x00081084: "X",  # AdmittingDiagnosesCodeSequence
    0x00081110: "X/Z",  # ReferencedStudySequence
    0x00081111: "X/Z/D",  # ReferencedPerformedProcedureStepSequence
    0x00081120: "X",  # ReferencedPatientSequence
    0x00081140: "X/Z/U*",  # ReferencedImageSequence
    0x00081155: "U",  # ReferencedSOPInstanceUID
    0x00081195: "U",  # TransactionUID
    0x00082111: "X",  # DerivationDescription
    0x00082112: "X/Z/U*",  # SourceImageSequence
    0x00083010: "U",  # IrradiationEventUID
    0x00084000: "X",  # IdentifyingComments
    0x00100010: "Z",  # PatientName
    0x00100020: "Z",  # PatientID
    0x00100021: "X",  # IssuerOfPatientID
    0x00100030: "Z",  # PatientBirthDate
    0x00100032: "X",  # PatientBirthTime
    0x00100040: "Z",  # PatientSex
    0x00100050: "X",  # PatientInsurancePlanCodeSequence
    0x00100101: "X",  # PatientPrimaryLanguageCodeSequence
    0x00100102: "X",  # PatientPrimaryLanguageModifierCodeSequence
    0x00101000: "X",  # OtherPatientIDs
    0x00101001: "X",  # OtherPatientNames
    0x00101002: "X",  # OtherPatientIDsSequence
    0x00101005: "X",  # PatientBirthName
    0x00101010: "X",  # PatientAge
    0x00101020: "X",  # PatientSize
    0x00101030: "X",  # PatientWeight
    0x00101040: "X",  # PatientAddress
    0x00101050: "X",  # InsurancePlanIdentification
    0x00101060: "X",  # PatientMotherBirthName
    0x00101080: "X",  # MilitaryRank
    0x00101081: "X",  # BranchOfService
    0x00101090: "X",  # MedicalRecordLocator
    0x00101100: "X",  # ReferencedPatientPhotoSequence
    0x00102000: "X",  # MedicalAlerts
    0x00102110: "X",  # Allergies
    0x00102150: "X",  # CountryOfResidence
    0x00102152: "X",  # RegionOfResidence
    0x00102154: "X",  # PatientTelephoneNumbers
    0x00102155: "X",  # PatientTelecomInformation
    0x00102160: "X",  # EthnicGroup
    0x00102180: "X",  # Occupation
    0x001021A0: "X",  # SmokingStatus
    0x001021B0: "X",  # AdditionalPatientHistory
    0x001021C0: "X",  # PregnancyStatus
    0x001021D0: "X",  # LastMenstrualDate
    0x001021F0: "X",  # PatientReligiousPreference
    0x00102203: "X/Z",  # PatientSexNeutered
    0x00102297: "X",  # ResponsiblePerson
    0x00102299: "X",  # ResponsibleOrganization
    0x00104000: "X",  # PatientComments
    0x00120010: "D",  # ClinicalTrialSponsorName
    0x00120020: "D",  # ClinicalTrialProtocolID
    0x00120021: "Z",  # ClinicalTrialProtocolName
    0x00120030: "Z",  # ClinicalTrialSiteID
    0x00120031: "Z",  # ClinicalTrialSiteName
    0x00120040: "D",  # ClinicalTrialSubjectID
    0x00120042: "D",  # ClinicalTrialSubjectReadingID
    0x00120050: "Z",  # ClinicalTrialTimePointID
    0x00120051: "X",  # ClinicalTrialTimePointDescription
    0x00120060: "Z",  # ClinicalTrialCoordinatingCenterName
    0x00120071: "X",  # ClinicalTrialSeriesID
    0x00120072: "X",  # ClinicalTrialSeriesDescription
    0x00120081: "D",  # ClinicalTrialProtocolEthicsCommitteeName
    0x00120082: "X",  # ClinicalTrialProtocolEthicsCommitteeApprovalNumber
    0x0016002B: "X",  # MakerNote
    0x0016004B: "X",  # DeviceSettingDescription
    0x0016004D: "X",  # CameraOwnerName
    0x0016004E: "X",  # LensSpecification
    0x0016004F: "X",  # LensMake
    0x00160050: "X",  # LensModel
    0x00160051: "X",  # LensSerialNumber
    0x00160070: "X",  # GPSVersionID
    0x00160071: "X",  # GPSLatitudeRef
    0x00160072: "X",  # GPSLatitude
    0x00160073: "X",  # GPSLongitudeRef
    0x00160074: "X",  # GPSLongitude
    0x00160075: "X",  # GPSAltitudeRef
    0x00160076: "X",  # GPSAltitude
    0x00160077: "X",  # GPSTimeStamp
    0x00160078: "X",  # GPSSatellites
    0x00160079: "X",  # GPSStatus
    0x0016007A: "X",  # GPSMeasureMode
    0x0016007B: "X",  # GPSDOP
    0x0016007C: "X",  # GPSSpeedRef
    0x0016007D: "X",  # GPSSpeed
    0x0016007E: "X",  # GPSTrackRef
    0x0016007F: "X",  # GPSTrack
    0x00160080: "X",  # GPSImgDirectionRef
    0x00160081: "X",  # GPSImgDirection
    0x00160082: "X",  # GPSMapDatum
    0x00160083: "X",  # GPSDestLatitudeRef
    0x00160084: "X",  # GPSDestLatitude
    0x00160085: "X",  # GPSDestLongitudeRef
    0x00160086: "X",  # GPSDestLongitude
    0x00160087: "X",  # GPSDestBearingRef
    0x00160088: "X",  # GPSDestBearing
    0x00160089: "X",  # GPSDestDistanceRef
    0x0016008A: "X",  # GPSDestDistance
    0x0016008B: "X",  # GPSProcessingMethod
    0x0016008C: "X",  # GPSAreaInformation
    0x0016008D: "X",  # GPSDateStamp
    0x0016008E: "X",  # GPSDifferential
    0x00180010: "Z/D",  # ContrastBolusAgent
    0x00181000: "X/Z/D",  # DeviceSerialNumber
    0x00181002: "U",  # DeviceUID
    0x00181004: "X",  # PlateID
    0x00181005: "X",  # GeneratorID
    0x00181007: "X",  # CassetteID
    0x00181008: "X",  # GantryID
    0x00181009: "X",  # UniqueDeviceIdentifier
    0x0018100A: "X",  # UDISequence
    0x0018100B: "U",  # ManufacturerDeviceClassUID
    0x00181030: "X/D",  # ProtocolName
    0x001811BB: "D",  # AcquisitionFieldOfViewLabel
    0x00181400: "X/D",  # AcquisitionDeviceProcessingDescription
    0x00182042: "U",  # TargetUID
    0x00184000: "X",  # AcquisitionComments
    0x00185011: "X",  # TransducerIdentificationSequence
    0x0018700A: "X/D",  # DetectorID
    0x00189185: "X",  # RespiratoryMotionCompensationTechniqueDescription
    0x00189367: "D",  # XRaySourceID
    0x00189369: "D",  # SourceStartDateTime
    0x0018936A: "D",  # SourceEndDateTime
    0x00189371: "D",  # XRayDetectorID
    0x00189373: "X",  # XRayDetectorLabel
    0x0018937B: "X",  # MultienergyAcquisitionDescription
    0x0018937F: "X",  # DecompositionDescription
    0x00189424: "X",  # AcquisitionProtocolDescription
    0x00189516: "X/D",  # StartAcquisitionDateTime
    0x00189517: "X/D",  # EndAcquisitionDateTime
    0x00189937: "X",  # RequestedSeriesDescription
    0x0018A003: "X",  # ContributionDescription
    0x0020000D: "U",  # StudyInstanceUID
    0x0020000E: "U",  # SeriesInstanceUID
    0x00200010: "Z",  # StudyID
    0x00200052: "U",  # FrameOfReferenceUID
    0x00200200: "U",  # SynchronizationFrameOfReferenceUID
    0x00203401: "X",  # ModifyingDeviceID
    0x00203406: "X",  # ModifiedImageDescription
    0x00204000: "X",  # ImageComments
    0x00209158: "X",  # FrameComments
    0x00209161: "U",  # ConcatenationUID
    0x00209164: "U",  # DimensionOrganizationUID
    0x00281199: "U",  # PaletteColorLookupTableUID
    0x00281214: "U",  # LargePaletteColorLookupTableUID
    0x00284000: "X",  # ImagePresentationComments
    0x00320012: "X",  # StudyIDIssuer
    0x00321020: "X",  # ScheduledStudyLocation
    0x00321021: "X",  # ScheduledStudyLocationAETitle
    0x00321030: "X",  # ReasonForStudy
    0x00321032: "X",  # RequestingPhysician
    0x00321033: "X",  # RequestingService
    0x00321060: "X/Z",  # RequestedProcedureDescription
    0x00321066: "X",  # ReasonForVisit
    0x00321067: "X",  # ReasonForVisitCodeSequence
    0x00321070: "X",  # RequestedContrastAgent
    0x00324000: "X",  # StudyComments
    0x00340001: "D",  # FlowIdentifierSequence
    0x00340002: "D",  # FlowIdentifier
    0x00340005: "D",  # SourceIdentifier
    0x00340007: "D",  # FrameOriginTimestamp
    0x00380004: "X",  # ReferencedPatientAliasSequence
    0x00380010: "X",  # AdmissionID
    0x00380011: "X",  # IssuerOfAdmissionID
    0x00380014: "X",  # IssuerOfAdmissionIDSequence
    0x0038001E: "X",  # ScheduledPatientInstitutionResidence
    0x00380020: "X",  # AdmittingDate
    0x00380021: "X",  # AdmittingTime
    0x00380040: "X",  # DischargeDiagnosisDescription
    0x00380050: "X",  # SpecialNeeds
    0x00380060: "X",  # ServiceEpisodeID
    0x00380061: "X",  # IssuerOfServiceEpisodeID
    0x00380062: "X",  # ServiceEpisodeDescription
    0x00380064: "X",  # IssuerOfServiceEpisodeIDSequence
    0x00380300: "X",  # CurrentPatientLocation
    0x00380400: "X",  # PatientInstitutionResidence
    0x00380500: "X",  # PatientState
    0x00384000: "X",  # VisitComments
    0x003A0310: "U",  # MultiplexGroupUID
    0x003A0314: "D",  # ImpedanceMeasurementDateTime
    0x00400001: "X",  # ScheduledStationAETitle
    0x00400002: "X",  # ScheduledProcedureStepStartDate
    0x00400003: "X",  # ScheduledProcedureStepStartTime
    0x00400004: "X",  # ScheduledProcedureStepEndDate
    0x00400005: "X",  # ScheduledProcedureStepEndTime
    0x00400006: "X",  # ScheduledPerformingPhysicianName
    0x00400007: "X",  # ScheduledProcedureStepDescription
    0x00400009: "X",  # ScheduledProcedureStepID
    0x0040000B: "X",  # ScheduledPerformingPhysicianIdentificationSequence
    0x00400010: "X",  # ScheduledStationName
    0x00400011: "X",  # ScheduledProcedureStepLocation
    0x00400012: "X",  # PreMedication
    0x00400241: "X",  # PerformedStationAETitle
    0x00400242: "X",  # PerformedStationName
    0x00400243: "X",  # PerformedLocation
    0x00400244: "X",  # PerformedProcedureStepStartDate
    0x00400245: "X",  # PerformedProcedureStepStartTime
    0x00400250: "X",  # PerformedProcedureStepEndDate
    0x00400251: "X",  # PerformedProcedureStepEndTime
    0x00400253: "X",  # PerformedProcedureStepID
    0x00400254: "X",  # PerformedProcedureStepDescription
    0x00400275: "X",  # RequestAttributesSequence
    0x00400280: "X",  # CommentsOnThePerformedProcedureStep
    0x00400310: "X",  # CommentsOnRadiationDose
    0x0040050A: "X",  # SpecimenAccessionNumber
    0x00400512: "D",  # ContainerIdentifier
    0x00400513: "Z",  # IssuerOfTheContainerIdentifierSequence
    0x0040051A: "X",  # ContainerDescription
    0x00400551: "D",  # SpecimenIdentifier
    0x00400554: "U",  # SpecimenUID
    0x00400555: "X/Z",  # AcquisitionContextSequence
    0x00400562: "Z",  # IssuerOfTheSpecimenIdentifierSequence
    0x00400600: "X",  # SpecimenShortDescription
    0x00400602: "X",  # SpecimenDetailedDescription
    0x00400610: "Z",  # SpecimenPreparationSequence
    0x004006FA: "X",  # SlideIdentifier
    0x00401001: "X",  # RequestedProcedureID
    0x00401002: "X",  # ReasonForTheRequestedProcedure
    0x00401004: "X",  # PatientTransportArrangements
    0x00401005: "X",  # RequestedProcedureLocation
    0x0040100A: "X",  # ReasonForRequestedProcedureCodeSequence
    0x00401010: "X",  # NamesOfIntendedRecipientsOfResults
    0x00401011: "X",  # IntendedRecipientsOfResultsIdentificationSequence
    0x00401101: "D",  # PersonIdentificationCodeSequence
    0x00401102: "X",  # PersonAddress
    0x00401103: "X",  # PersonTelephoneNumbers
    0x00401104: "X",  # PersonTelecomInformation
    0x00401400: "X",  # RequestedProcedureComments
    0x00402001: "X",  # ReasonForTheImagingServiceRequest
    0x00402008: "X",  # OrderEnteredBy
    0x00402009: "X",  # OrderEntererLocation
    0x00402010: "X",  # OrderCallbackPhoneNumber
    0x00402011: "X",  # OrderCallbackTelecomInformation
    0x00402016: "Z",  # PlacerOrderNumberImagingServiceRequest
    0x00402017: "Z",  # FillerOrderNumberImagingServiceRequest
    0x00402400: "X",  # ImagingServiceRequestComments
    0x00403001: "X",  # ConfidentialityConstraintOnPatientDataDescription
    0x00404005: "X",  # ScheduledProcedureStepStartDateTime
    0x00404008: "X",  # ScheduledProcedureStepExpirationDateTime
    0x00404010: "X",  # ScheduledProcedureStepModificationDateTime
    0x00404011: "X",  # ExpectedCompletionDateTime
    0x00404023: "U",  # ReferencedGeneralPurposeScheduledProcedureStepTransactionUID
    0x00404025: "X",  # ScheduledStationNameCodeSequence
    0x00404027: "X",  # ScheduledStationGeographicLocationCodeSequence
    0x00404028: "X",  # PerformedStationNameCodeSequence
    0x00404030: "X",  # PerformedStationGeographicLocationCodeSequence
    0x00404034: "X",  # ScheduledHumanPerformersSequence
    0x00404035: "X",  # ActualHumanPerformersSequence
    0x00404036: "X",  # HumanPerformerOrganization
    0x00404037: "X",  # HumanPerformerName
    0x00404050: "X",  # PerformedProcedureStepStartDateTime
    0x00404051: "X",  # PerformedProcedureStepEndDateTime
    0x00404052: "X",  # ProcedureStepCancellationDateTime
    0x0040A027: "D",  # VerifyingOrganization
    0x0040A073: "D",  # VerifyingObserverSequence
    0x0040A075: "D",  # VerifyingObserverName
    0x0040A078: "X",  # AuthorObserverSequence
    0x0040A07A: "X",  # ParticipantSequence
    0x0040A07C: "X",  # CustodialOrganizationSequence
    0x0040A088: "Z",  # VerifyingObserverIdentificationCodeSequence
    0x0040A123: "D",  # PersonName
    0x0040A124: "U",  # UID
    0x0040A171: "U",  # ObservationUID
    0x0040A172: "U",  # ReferencedObservationUIDTrial
    0x0040A192: "X",  # ObservationDateTrial
    0x0040A193: "X",  # ObservationTimeTrial
    0x0040A307: "X",  # CurrentObserverTrial
    0x0040A352: "X",  # VerbalSourceTrial
    0x0040A353: "X",  # AddressTrial
    0x0040A354: "X",  # TelephoneNumberTrial
    0x0040A358: "X",  # VerbalSourceIdentifierCodeSequenceTrial
    0x0040A402: "U",  # ObservationSubjectUIDTrial
    0x0040A730: "D",  # ContentSequence
    0x0040DB0C: "U",  # TemplateExtensionOrganizationUID
    0x0040DB0D: "U",  # TemplateExtensionCreatorUID
    0x0050001B: "X",  # ContainerComponentID
    0x00500020: "X",  # DeviceDescription
    0x00500021: "X",  # LongDeviceDescription
    0x00620021: "U",  # TrackingUID
    0x00700001: "D",  # GraphicAnnotationSequence
    0x00700084: "Z/D",  # ContentCreatorName
    0x00700086: "X",  # ContentCreatorIdentificationCodeSequence
    0x0070031A: "U",  # FiducialUID
    0x00701101: "U",  # PresentationDisplayCollectionUID
    0x00701102: "U",  # PresentationSequenceCollectionUID
    0x00880140: "U",  # StorageMediaFileSetUID
    0x00880200: "X",  # IconImageSequence
    0x00880904: "X",  # TopicTitle
    0x00880906: "X",  # TopicSubject
    0x00880910: "X",  # TopicAuthor
    0x00880912: "X",  # TopicKeywords
    0x04000100: "U",  # DigitalSignatureUID
    0x04000402: "X",  # ReferencedDigitalSignatureSequence
    0x04000403: "X",  # ReferencedSOPInstanceMACSequence
    0x04000404: "X",  # MAC
    0x04000550: "X",  # ModifiedAttributesSequence
    0x04000551: "X",  # NonconformingModifiedAttributesSequence
    0x04000552: "X",  # NonconformingDataElementValue
    0x04000561: "X",  # OriginalAttributesSequence
    0x04000600: "X",  # InstanceOriginStatus
    0x20300020: "X",  # TextString
    0x22000002: "X/Z",  # LabelText
    0x22000005: "X/Z",  # BarcodeValue
    0x30060002: "D",  # StructureSetLabel
    0x30060004: "X",  # StructureSetName
    0x30060006: "X",  # StructureSetDescription
    0x30060008: "Z",  # StructureSetDate
    0x30060009: "X/D",  # StructureSetTime
    0x30060024: "U",  # ReferencedFrameOfReferenceUID
    0x30060026: "Z",  # ROIName
    0x30060028: "X",  # ROIDescription
    0x30060038: "X",  # ROIGenerationDescription
    0x30060085: "X",  # ROIObservationLabel
    0x30060088: "X",  # ROIObservationDescription
    0x300600A6: "Z",  # ROIInterpreter
    0x300600C2: "U",  # RelatedFrameOfReferenceUID
    0x30080054: "X/D",  # FirstTreatmentDate
    0x30080056: "X/D",  # MostRecentTreatmentDate
    0x30080105: "X/Z",  # SourceSerialNumber
    0x30080250: "X/D",  # TreatmentDate
    0x30080251: "X/D",  # TreatmentTime
    0x300A0002: "D",  # RTPlanLabel
    0x300A0003: "X",  # RTPlanName
    0x300A0004: "X",  # RTPlanDescription
    0x300A0006: "X/D",  # RTPlanDate
    0x300A0007: "X/D",  # RTPlanTime
    0x300A000E: "X",  # PrescriptionDescription
    0x300A0013: "U",  # DoseReferenceUID
    0x300A0016: "X",  # DoseReferenceDescription
    0x300A0072: "X",  # FractionGroupDescription
    0x300A0083: "U",  # ReferencedDoseReferenceUID
    0x300A00B2: "X",  # TreatmentMachineName
    0x300A00C3: "X",  # BeamDescription
    0x300A00DD: "X",  # BolusDescription
    0x300A0196: "X",  # FixationDeviceDescription
    0x300A01A6: "X",  # ShieldingDeviceDescription
    0x300A01B2: "X",  # SetupTechniqueDescription
    0x300A0216: "X",  # SourceManufacturer
    0x300A02EB: "X",  # CompensatorDescription
    0x300A0608: "D",  # TreatmentPositionGroupLabel
    0x300A0609: "U",  # TreatmentPositionGroupUID
    0x300A0611: "Z",  # RTAccessoryHolderSlotID
    0x300A0615: "Z",  # RTAccessoryDeviceSlotID
    0x300A0619: "D",  # RadiationDoseIdentificationLabel
    0x300A0623: "D",  # RadiationDoseInVivoMeasurementLabel
    0x300A062A: "D",  # RTToleranceSetLabel
    0x300A0650: "U",  # PatientSetupUID
    0x300A0676: "X",  # EquipmentFrameOfReferenceDescription
    0x300A067C: "D",  # RadiationGenerationModeLabel
    0x300A067D: "Z",  # RadiationGenerationModeDescription
    0x300A0700: "U",  # TreatmentSessionUID
    0x300A0734: "D",  # TreatmentToleranceViolationDescription
    0x300A0736: "D",  # TreatmentToleranceViolationDateTime
    0x300A073A: "D",  # RecordedRTControlPointDateTime
    0x300A0741: "D",  # InterlockDateTime
    0x300A0742: "D",  # InterlockDescription
    0x300A0760: "D",  # OverrideDateTime
    0x300A0783: "D",  # InterlockOriginDescription
    0x300C0113: "X",  # ReasonForOmissionDescription
    0x300E0008: "X/Z",  # ReviewerName
    0x30100006: "U",  # ConceptualVolumeUID
    0x3010000B: "U",  # ReferencedConceptualVolumeUID
    0x3010000F: "Z",  # ConceptualVolumeCombinationDescription
    0x30100013: "U",  # ConstituentConceptualVolumeUID
    0x30100015: "U",  # SourceConceptualVolumeUID
    0x30100017: "Z",  # ConceptualVolumeDescription
    0x3010001B: "Z",  # DeviceAlternateIdentifier
    0x3010002D: "D",  # DeviceLabel
    0x30100031: "U",  # ReferencedFiducialsUID
    0x30100033: "D",  # UserContentLabel
    0x30100034: "D",  # UserContentLongLabel
    0x30100035: "D",  # EntityLabel
    0x30100036: "X",  # EntityName
    0x30100037: "X",  # EntityDescription
    0x30100038: "D",  # EntityLongLabel
    0x3010003B: "U",  # RTTreatmentPhaseUID
    0x30100043: "Z",  # ManufacturerDeviceIdentifier
    0x3010004C: "X/D",  # IntendedPhaseStartDate
    0x3010004D: "X/D",  # IntendedPhaseEndDate
    0x30100054: "D",  # RTPrescriptionLabel
    0x30100056: "X/D",  # RTTreatmentApproachLabel
    0x3010005A: "Z",  # RTPhysicianIntentNarrative
    0x3010005C: "Z",  # ReasonForSuperseding
    0x30100061: "X",  # PriorTreatmentDoseDescription
    0x3010006E: "U",  # DosimetricObjectiveUID
    0x3010006F: "U",  # ReferencedDosimetricObjectiveUID
    0x30100077: "D",  # TreatmentSite
    0x3010007A: "Z",  # TreatmentTechniqueNotes
    0x3010007B: "Z",  # PrescriptionNotes
    0x3010007F: "Z",  # FractionationNotes
    0x30100081: "Z",  # PrescriptionNotesSequence
    0x40000010: "X",  # Arbitrary
    0x40004000: "X",  # TextComments
    0x40080042: "X",  # ResultsIDIssuer
    0x40080102: "X",  # InterpretationRecorder
    0x4008010A: "X",  # InterpretationTranscriber
    0x4008010B: "X",  # InterpretationText
    0x4008010C: "X",  # InterpretationAuthor
    0x40080111: "X",  # InterpretationApproverSequence
    0x40080114: "X",  # PhysicianApprovingInterpretation
    0x40080115: "X",  # InterpretationDiagnosisDescription
    0x40080118: "X",  # ResultsDistributionListSequence
    0x40080119: "X",  # DistributionName
    0x4008011A: "X",  # DistributionAddress
    0x40080202: "X",  # InterpretationIDIssuer
    0x40080300: "X",  # Impressions
    0x40084000: "X",  # ResultsComments
    0xFFFAFFFA: "X",  # DigitalSignaturesSequence
    0xFFFCFFFC: "X",  # DataSetTrailingPadding
}

_CURVE_GROUPS = range(0x5000, 0x5020, 2)
"""Curve Data (50xx,xxxx): X, the whole repeating group (retired, could hold annotations)."""
_OVERLAY_GROUPS = range(0x6000, 0x6020, 2)
_OVERLAY_ELEMENTS = (0x3000, 0x4000)
"""Overlay Data (60xx,3000) and Overlay Comments (60xx,4000): X."""

#: Dummy values for action D, by VR: recognisably not real, valid for the VR.
DUMMY_VALUES: Mapping[str, object] = {
    "AE": "DEIDENTIFIED",
    "AS": "000D",
    "CS": "DEIDENTIFIED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "DEIDENTIFIED",
    "LT": "DEIDENTIFIED",
    "PN": "DEIDENTIFIED",
    "SH": "DEIDENTIFIED",
    "ST": "DEIDENTIFIED",
    "TM": "000000",
    "UC": "DEIDENTIFIED",
    "UR": "urn:deidentified",
    "UT": "DEIDENTIFIED",
    "AT": 0,
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
}
_BINARY_DUMMY = b"\x00\x00"
_PATIENT_NAME = 0x00100010
_PATIENT_ID = 0x00100020
_UID_LABEL = b"dicomcrypt/v1/uid\0"
_PSEUDONYM_LABEL = b"dicomcrypt/v1/pseudonym\0"


def action_for(tag: int) -> str | None:
    """The Basic Profile action code for ``tag`` (``None``: keep)."""
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2:
        return "X"  # "Private attributes (gggg,eeee) where gggg is odd": X
    if group in _CURVE_GROUPS:
        return "X"
    if group in _OVERLAY_GROUPS and element in _OVERLAY_ELEMENTS:
        return "X"
    return BASIC_PROFILE.get(tag)


class Pseudonyms:
    """Keyed, repeatable replacements: UIDs for action U, pseudonyms for patient name and ID."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the pseudonym secret must be at least 16 bytes")
        self._secret = bytes(secret)

    def __repr__(self) -> str:
        return "Pseudonyms(<secret>)"

    def uid(self, original: str) -> str:
        """``2.25.`` + a version-4-shaped UUID from HMAC-SHA256 of the UID (PS3.5 B.2)."""
        digest = hmac.new(self._secret, _UID_LABEL + original.encode("ascii", "replace"), hashlib.sha256).digest()
        return f"2.25.{uuid.UUID(bytes=digest[:16], version=4).int}"

    def pseudonym(self, original: str) -> str:
        """16 characters of base32 from HMAC-SHA256 of the value: the same patient, the same pseudonym."""
        digest = hmac.new(self._secret, _PSEUDONYM_LABEL + original.encode("utf-8", "replace"), hashlib.sha256).digest()
        return base64.b32encode(digest[:10]).decode()


def deidentify(ds: Dataset, pseudonyms: Pseudonyms) -> Dataset:
    """Apply the Basic Profile to ``ds`` in place; return the originals of what changed.

    The returned dataset holds the original top-level elements (whole, including sequences
    in which only a nested element changed): the content of the Modified Attributes
    Sequence item. File Meta is not a data set element: (0002,0003) follows the SOP
    Instance UID when the dataset has file meta.
    """
    originals = Dataset()
    # Sorted as ints: BaseTag compares in Python (issue 14); the order is the same.
    for tag in sorted(ds._dict, key=int):  # noqa: SLF001 - pydicom has no public tag view without conversion
        elem = ds[tag]
        if action_for(tag) is None and elem.VR != "SQ":
            continue  # never copy what cannot change (Pixel Data)
        before = independent_element_copy(elem)
        if _protect(ds, elem, pseudonyms):
            originals.add(before)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return originals


def _protect(container: Dataset, elem: DataElement, pseudonyms: Pseudonyms) -> bool:
    """Apply the action for ``elem`` inside ``container``; True if anything changed."""
    action = action_for(int(elem.tag))
    if action is None or action == "X/Z/U*":
        return _protect_items(elem, pseudonyms)
    if action == "X":
        del container[elem.tag]
        return True
    if action == "U":
        return _replace_uids(elem, pseudonyms.uid)
    if action in ("Z", "X/Z"):
        return _set(elem, _zero_or_pseudonym(elem, pseudonyms))
    return _set(elem, _dummy(elem))  # D, X/D, Z/D, X/Z/D


def _protect_items(elem: DataElement, pseudonyms: Pseudonyms) -> bool:
    """Recurse into the items of a kept sequence."""
    if elem.VR != "SQ" or not elem.value:
        return False
    changed = False
    for item in elem.value:
        for tag in sorted(item._dict, key=int):  # noqa: SLF001
            changed |= _protect(item, item[tag], pseudonyms)
    return changed


def _replace_uids(elem: DataElement, replace: Callable[[str], str]) -> bool:
    if elem.VM == 0:
        return False
    if elem.VR != "UI":  # a UID read under another VR (UN): no safe mapping, so a dummy
        return _set(elem, _dummy(elem))
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    new = [replace(str(v)) if str(v) else str(v) for v in values]
    return _set(elem, new if elem.VM > 1 else new[0])


def _zero_or_pseudonym(elem: DataElement, pseudonyms: Pseudonyms) -> object:
    """Zero length, except patient name and ID, which keep a pseudonym so that instances of
    one patient still group together (Z allows "a dummy value")."""
    if elem.tag in (_PATIENT_NAME, _PATIENT_ID) and not elem.is_empty:
        alias = pseudonyms.pseudonym(str(elem.value))
        return f"DEIDENTIFIED^{alias}" if elem.tag == _PATIENT_NAME else f"DEID-{alias}"
    return Sequence() if elem.VR == "SQ" else None


def _dummy(elem: DataElement) -> object:
    if elem.VR == "SQ":
        # A dummy item cannot be built for every sequence; an empty one is the safe choice and
        # the original travels encrypted.
        return Sequence()
    if elem.VR in DUMMY_VALUES:
        return DUMMY_VALUES[elem.VR]
    return _BINARY_DUMMY  # OB, OW, OD, OF, OL, OV, UN


def _set(elem: DataElement, value: Any) -> bool:
    """Give ``elem`` ``value``; True if that changed it."""
    if elem.VR == "SQ":
        if len(elem.value) == 0 and len(value) == 0:
            return False
        elem.value = value
        return True
    old = elem.value
    if (old in (None, "", b"") and value in (None, "", b"")) or old == value:
        return False
    elem.value = value
    return True

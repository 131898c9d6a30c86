"""Running a study's grid."""

package kaleyradocs

// The media types and sizes the Upload Media Files API takes (Meta's list, which Kaleyra's
// reference points to). Sizes are in decimal units (1 MB = 1,000,000 bytes): the documents give
// "5 MB" without saying which megabyte, and refusing a file a few percent early costs one
// re-encode, while uploading one WhatsApp then refuses fails every message of a campaign.

// MediaType is one MIME type WhatsApp takes, the message type it is sent as and its size limit.
type MediaType struct {
	// MIME is the type as the upload's type field names it: image/jpeg.
	MIME string
	// Kind is the message type the media is sent as: image, video, audio, document or sticker.
	Kind string
	// MaxBytes is the largest file of this type (a static sticker's, for image/webp).
	MaxBytes int64
	// MaxAnimatedBytes is the largest animated sticker; 0 for every other type.
	MaxAnimatedBytes int64
}

// Units of the limits.
const (
	KB = 1000
	MB = 1000 * KB
)

// MediaTypes lists every MIME type the upload takes, by kind.
var MediaTypes = []MediaType{
	{MIME: "image/jpeg", Kind: "image", MaxBytes: 5 * MB},
	{MIME: "image/png", Kind: "image", MaxBytes: 5 * MB},
	{MIME: "video/mp4", Kind: "video", MaxBytes: 16 * MB},
	{MIME: "video/3gpp", Kind: "video", MaxBytes: 16 * MB},
	{MIME: "audio/aac", Kind: "audio", MaxBytes: 16 * MB},
	{MIME: "audio/mp4", Kind: "audio", MaxBytes: 16 * MB},
	{MIME: "audio/mpeg", Kind: "audio", MaxBytes: 16 * MB},
	{MIME: "audio/amr", Kind: "audio", MaxBytes: 16 * MB},
	{MIME: "audio/ogg", Kind: "audio", MaxBytes: 16 * MB},
	{MIME: "text/plain", Kind: "document", MaxBytes: 100 * MB},
	{MIME: "application/pdf", Kind: "document", MaxBytes: 100 * MB},
	{MIME: "application/msword", Kind: "document", MaxBytes: 100 * MB},
	{MIME: "application/vnd.ms-excel", Kind: "document", MaxBytes: 100 * MB},
	{MIME: "application/vnd.ms-powerpoint", Kind: "document", MaxBytes: 100 * MB},
	{MIME: "application/vnd.openxmlformats-officedocument.wordprocessingml.document", Kind: "document", MaxBytes: 100 * MB},
	{MIME: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", Kind: "document", MaxBytes: 100 * MB},
	{MIME: "application/vnd.openxmlformats-officedocument.presentationml.presentation", Kind: "document", MaxBytes: 100 * MB},
	{MIME: "image/webp", Kind: "sticker", MaxBytes: 100 * KB, MaxAnimatedBytes: 500 * KB},
}

// MaxMediaBytes is the largest file of any type (a document's limit).
const MaxMediaBytes = 100 * MB

// LookupMedia returns the entry of a MIME type (without parameters, lower case).
func LookupMedia(mime string) (MediaType, bool) {
	for _, m := range MediaTypes {
		if m.MIME == mime {
			return m, true
		}
	}
	return MediaType{}, false
}

// Limit is the largest file of this type, animated or not.
func (m MediaType) Limit(animated bool) int64 {
	if animated && m.MaxAnimatedBytes > 0 {
		return m.MaxAnimatedBytes
	}
	return m.MaxBytes
}

package remote

import (
	"errors"
	"fmt"
	"net/http"

	"oras.land/oras-go/v2/registry/remote/auth"

	"oras.land/oras-go/v2/registry/remote/errcode"
)

// ErrAuth marks an error of a registry refusing fgimg's credentials (or
// their absence).
var ErrAuth = errors.New("authentication failed")

// explain turns a registry's refusal into a sentence that names the
// registry and says what to do. Credentials never appear in it: oras-go's
// errors name the request's method and URL only.
func explain(host string, err error) error {
	if errors.Is(err, auth.ErrBasicCredentialNotFound) {
		return fmt.Errorf("%w: registry %s asks for credentials and none were found: log in with `docker login %s` or `podman login %s`, or set FGIMG_REMOTE_USERNAME and FGIMG_REMOTE_PASSWORD", ErrAuth, host, host, host)
	}
	var resp *errcode.ErrorResponse
	if errors.As(err, &resp) {
		switch resp.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%w: registry %s refused the credentials (401): log in with `docker login %s` or `podman login %s`, or set FGIMG_REMOTE_USERNAME and FGIMG_REMOTE_PASSWORD: %v", ErrAuth, host, host, host, err)
		case http.StatusForbidden:
			return fmt.Errorf("%w: registry %s denied access (403): the account may not read or write this repository: %v", ErrAuth, host, err)
		}
	}
	return err
}

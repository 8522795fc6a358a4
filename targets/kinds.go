package targets

// kinds lists every target kind fgimg builds: adding a kind is one file
// declaring it and one line here.
var kinds = []Kind{
	Tar{},
	OCI{},
	Raw{},
	QCOW2{},
	Netboot{},
	OpenStack{},
	OpenNebula{},
	EC2{},
	Eucalyptus{},
	Nimbus{},
}

// reserved are target kinds the language names but fgimg does not build
// yet: a template using one gets a diagnostic saying so.
var reserved = []string{"xcat"}

// The disk and cloud kinds adapt the image (kinds already checks every Kind).
var (
	_ Adapter = Raw{}
	_ Adapter = QCOW2{}
	_ Adapter = OpenStack{}
	_ Adapter = OpenNebula{}
	_ Adapter = EC2{}
	_ Adapter = Eucalyptus{}
	_ Adapter = Nimbus{}
)

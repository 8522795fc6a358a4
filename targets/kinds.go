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
	XCAT{},
	Warewulf{},
	EC2{},
	Eucalyptus{},
	Nimbus{},
}

// The disk and cloud kinds adapt the image (kinds already checks every Kind).
var (
	_ Adapter = Raw{}
	_ Adapter = QCOW2{}
	_ Adapter = OpenStack{}
	_ Adapter = OpenNebula{}
	_ Adapter = XCAT{}
	_ Adapter = EC2{}
	_ Adapter = Eucalyptus{}
	_ Adapter = Nimbus{}
)

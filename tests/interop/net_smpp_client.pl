#!/usr/bin/perl
# Net::SMPP (Debian's libnet-smpp-perl) as a third-party ESME against the gateway:
# bind_transceiver, one submit_sm asking for a receipt, then answer each deliver_sm
# (the receipt, then whatever the test has the gateway send) and unbind after the
# given number of them. One JSON line per event on stdout for the test.
# usage: perl net_smpp_client.pl PORT SYSTEM_ID PASSWORD SOURCE DESTINATION TEXT DELIVERIES
use strict;
use warnings;
use IO::Handle;
use JSON::PP;
use Net::SMPP;

my ($port, $system_id, $password, $source, $destination, $text, $deliveries) = @ARGV;
my $json = JSON::PP->new->canonical;
STDOUT->autoflush(1);
sub emit { print $json->encode($_[0]), "\n"; }
sub cstring { my ($value) = @_; return undef unless defined $value; $value =~ s/\0\z//; return $value; }

my ($smpp, $bound) = Net::SMPP->new_transceiver(
    '127.0.0.1', port => $port, system_id => $system_id, password => $password,
    smpp_version => 0x34,
);
die "no connection to the gateway: $!\n" unless $smpp;
emit({ event => 'bound', status => $bound->{status} });
exit 1 if $bound->{status} != 0;

my $resp = $smpp->submit_sm(
    source_addr_ton => 1, source_addr_npi => 1, source_addr => $source,
    dest_addr_ton => 1, dest_addr_npi => 1, destination_addr => $destination,
    registered_delivery => 1, data_coding => 0, short_message => $text,
);
emit({ event => 'submit_sm_resp', status => $resp->{status}, message_id => $resp->{message_id} });

for (1 .. $deliveries) {
    my $pdu;
    do {
        $pdu = $smpp->read_pdu() or die "connection lost\n";
    } until $pdu->{cmd} == Net::SMPP::CMD_deliver_sm;
    $smpp->deliver_sm_resp(seq => $pdu->{seq}, message_id => '');
    emit({
        event => 'deliver_sm',
        esm_class => $pdu->{esm_class},
        source_addr => $pdu->{source_addr},
        destination_addr => $pdu->{destination_addr},
        short_message => $pdu->{short_message},
        receipted_message_id => cstring($pdu->{receipted_message_id}),
        message_state => defined $pdu->{message_state} ? unpack('C', $pdu->{message_state}) : undef,
    });
}
my $unbound = $smpp->unbind();
emit({ event => 'unbound', status => $unbound ? $unbound->{status} : undef });
